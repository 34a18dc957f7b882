use super::error::ConfigError;
use super::raw::RawConfig;
use super::raw::RawDestination;
use hookflow_protocol::options::locate;
use hookflow_protocol::options::locate_anywhere;

/// Every unknown key in the file at once (typed parsing would stop at the first), each with
/// its line. No list of keys is kept by hand: each key of the file is tried alone against the
/// serde type that reads it, whose `deny_unknown_fields` names an unknown key and the fields it
/// takes (from the type's own definition, so a new field cannot be forgotten). Empty when all
/// keys are known or the text is not a YAML mapping (the typed parse then says what is wrong).
pub(super) fn unknown_keys(text: &str, name: &str) -> Vec<ConfigError> {
    use serde_yaml::Value as Yaml;
    let Ok(top @ Yaml::Mapping(_)) = serde_yaml::from_str::<Yaml>(text) else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    let mut report = |key: &str, section: &str, expected: &str| {
        problems.push(ConfigError {
            file: name.to_string(),
            line: locate_anywhere(text, key),
            message: format!("unknown key `{key}` in {section}; known keys: {expected}"),
            more: Vec::new(),
        });
    };
    let slug_of = |endpoint: &Yaml| {
        endpoint
            .get("slug")
            .and_then(Yaml::as_str)
            .unwrap_or("?")
            .to_string()
    };
    unknown_fields::<RawConfig>(&top, &mut Vec::new(), &mut |path, key, expected| {
        let section = match path {
            [] => "the relay configuration".to_string(),
            [Step::Key(k), Step::Item(i), ..] if k == "endpoints" => {
                format!("endpoint `{}`", slug_of(&top["endpoints"][*i]))
            }
            _ => path
                .iter()
                .filter_map(|s| match s {
                    Step::Key(k) => Some(k.as_str()),
                    Step::Item(_) => None,
                })
                .collect::<Vec<_>>()
                .join("."),
        };
        report(key, &section, expected);
    });
    // An endpoint's destinations are read later, by their own type.
    if let Some(Yaml::Sequence(endpoints)) = top.get("endpoints") {
        for endpoint in endpoints {
            let Some(Yaml::Sequence(list)) = endpoint.get("destinations") else {
                continue;
            };
            let section = format!("a destination of endpoint `{}`", slug_of(endpoint));
            for d in list {
                unknown_fields::<RawDestination>(d, &mut Vec::new(), &mut |path, key, expected| {
                    if path.is_empty() {
                        report(key, &section, expected);
                    }
                });
            }
        }
    }
    problems
}

/// A step of a path into a YAML document: a mapping's key, or a sequence's item.
enum Step {
    Key(String),
    Item(usize),
}

/// Calls `found(path, key, expected keys)` for every key under `value` (at `path` of a document
/// read as `T`) that `T` refuses as unknown.
fn unknown_fields<T: serde::de::DeserializeOwned>(
    value: &serde_yaml::Value,
    path: &mut Vec<Step>,
    found: &mut dyn FnMut(&[Step], &str, &str),
) {
    use serde_yaml::Value as Yaml;
    match value {
        Yaml::Mapping(map) => {
            for (k, v) in map {
                let Some(key) = k.as_str() else { continue };
                // The document with this key alone (its value null), along `path`.
                let mut doc = Yaml::Mapping([(k.clone(), Yaml::Null)].into_iter().collect());
                for step in path.iter().rev() {
                    doc = match step {
                        Step::Key(p) => {
                            Yaml::Mapping([(Yaml::String(p.clone()), doc)].into_iter().collect())
                        }
                        Step::Item(_) => Yaml::Sequence(vec![doc]),
                    };
                }
                if let Err(e) = serde_yaml::from_value::<T>(doc) {
                    if let Some(expected) = unknown_field_expected(&e.to_string()) {
                        found(path, key, &expected);
                        continue;
                    }
                }
                path.push(Step::Key(key.to_string()));
                unknown_fields::<T>(v, path, found);
                path.pop();
            }
        }
        Yaml::Sequence(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(Step::Item(i));
                unknown_fields::<T>(item, path, found);
                path.pop();
            }
        }
        _ => {}
    }
}

/// The keys serde's "unknown field `x`, expected one of `a`, `b`" names, as `a, b`; `None`
/// for any other error.
fn unknown_field_expected(message: &str) -> Option<String> {
    let rest = &message[message.find("unknown field `")?..];
    let expected = rest.split_once("expected").map_or("", |(_, e)| e);
    let names: Vec<&str> = expected.split('`').skip(1).step_by(2).collect();
    Some(names.join(", "))
}

/// Every value of the wrong type, each at its own line: the typed parse stops at the first, so
/// each key (each key of `limits` and `delivery`, each endpoint) is tried on its own.
pub(super) fn type_problems(text: &str, name: &str) -> Vec<ConfigError> {
    use serde_yaml::{Mapping, Value as Yaml};
    let Ok(Yaml::Mapping(top)) = serde_yaml::from_str::<Yaml>(text) else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    let mut probe = |snippet: Mapping, keys: &[&str], line: Option<usize>| {
        if let Err(e) = serde_yaml::from_value::<RawConfig>(Yaml::Mapping(snippet)) {
            if e.to_string().contains("unknown field") {
                return; // reported by `unknown_keys`, with its line
            }
            let what = keys.join(".");
            problems.push(ConfigError {
                file: name.to_string(),
                line: line.or_else(|| locate(text, keys)),
                message: format!("`{what}`: {e}"),
                more: Vec::new(),
            });
        }
    };
    for (key, value) in &top {
        let Some(k) = key.as_str() else { continue };
        match (k, value) {
            ("limits" | "delivery", Yaml::Mapping(section)) => {
                for (sub, v) in section {
                    let Some(sk) = sub.as_str() else { continue };
                    let mut inner = Mapping::new();
                    inner.insert(sub.clone(), v.clone());
                    let mut outer = Mapping::new();
                    outer.insert(key.clone(), Yaml::Mapping(inner));
                    probe(outer, &[k, sk], None);
                }
            }
            ("endpoints", Yaml::Sequence(items)) => {
                for item in items {
                    let slug = item.get("slug").and_then(Yaml::as_str).unwrap_or("?");
                    let slug_line = endpoint_line(text, slug);
                    let endpoint = |fields: Mapping| {
                        let mut outer = Mapping::new();
                        outer.insert(key.clone(), Yaml::Sequence(vec![Yaml::Mapping(fields)]));
                        outer
                    };
                    let Yaml::Mapping(fields) = item else {
                        probe(endpoint(Mapping::new()), &[k, slug], slug_line);
                        continue;
                    };
                    // Missing required fields, at the endpoint's line.
                    let mut required = Mapping::new();
                    for f in fields.keys() {
                        required.insert(f.clone(), Yaml::String("x".into()));
                    }
                    probe(endpoint(required), &[k, slug], slug_line);
                    // Each field's type, at the field's own line.
                    for (f, v) in fields {
                        let Some(fk) = f.as_str() else { continue };
                        let mut one = Mapping::new();
                        for r in ["slug", "repo", "token_env"] {
                            one.insert(Yaml::String(r.into()), Yaml::String("x".into()));
                        }
                        one.insert(f.clone(), v.clone());
                        let line = slug_line.and_then(|from| {
                            text.lines()
                                .enumerate()
                                .skip(from - 1)
                                .find(|(_, l)| l.contains(&format!("{fk}:")))
                                .map(|(i, _)| i + 1)
                        });
                        probe(endpoint(one), &[k, slug, fk], line);
                    }
                }
            }
            _ => {
                let mut outer = Mapping::new();
                outer.insert(key.clone(), value.clone());
                probe(outer, &[k], None);
            }
        }
    }
    problems
}

/// The line (1-based) of the endpoint `slug` in a configuration's text: its `slug:` line, so a
/// problem with an endpoint points at that endpoint rather than at `endpoints:`.
pub fn endpoint_line(text: &str, slug: &str) -> Option<usize> {
    text.lines()
        .position(|l| l.contains("slug:") && l.contains(slug))
        .map(|i| i + 1)
}
