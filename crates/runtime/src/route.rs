//! Path patterns of webhook triggers, with the semantics of `path-to-regexp` 6.3 (the version
//! actionsflow 1.12 ships): `/users/:id`, optional `:id?`, repeated `:rest*` / `:rest+`, custom
//! groups `:id(\\d+)`, unnamed groups `(\\d+)` (numbered `0`, `1`, …), `{prefix:name suffix}`
//! groups, `\\` escapes. Matching is case-insensitive, a trailing `/` is optional, and parameter
//! values are percent-decoded.
//!
//! This module only compiles and matches patterns; which part of a request path is handed to a
//! pattern is decided by [`crate::matching`].

use fancy_regex::Regex;
use serde_json::{Map, Value};

/// Characters that end a parameter by default (`path-to-regexp`'s `delimiter`).
const DELIMITER: &str = "/#?";
/// Characters that may stand before a parameter as its prefix.
const PREFIXES: &str = "./";

/// A path pattern that did not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} at character {index} of path pattern {pattern:?}")]
pub struct RouteError {
    /// The pattern as written in the workflow file.
    pub pattern: String,
    /// Zero-based character position of the problem.
    pub index: usize,
    /// What is wrong there.
    pub reason: String,
}

/// A compiled path pattern.
#[derive(Debug, Clone)]
pub struct RoutePattern {
    source: String,
    matcher: Matcher,
    keys: Vec<Key>,
}

/// How a pattern is matched. Compiling a regular expression is most of the work of a run that
/// reads one trigger, so a pattern without parameters (`/events`) is compared as text; the
/// expression it stands for is compiled only for input the comparison cannot decide.
#[derive(Debug, Clone)]
enum Matcher {
    /// `(?i)^TEXT[/#?]?$` for ASCII `TEXT`, compared directly on ASCII input.
    Literal {
        text: String,
        source: String,
        regex: std::sync::OnceLock<Result<Regex, String>>,
    },
    /// Everything else.
    Regex(Regex),
}

impl Matcher {
    fn regex(&self) -> Option<&Regex> {
        match self {
            Matcher::Regex(r) => Some(r),
            Matcher::Literal { source, regex, .. } => regex
                .get_or_init(|| Regex::new(source).map_err(|e| e.to_string()))
                .as_ref()
                .ok(),
        }
    }
}

#[derive(Debug, Clone)]
struct Key {
    name: String,
    prefix: String,
    suffix: String,
    repeat: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum TokenKind {
    Modifier,
    Escaped,
    Open,
    Close,
    Name,
    Pattern,
    Char,
    End,
}

#[derive(Debug, Clone)]
struct Token {
    kind: TokenKind,
    index: usize,
    value: String,
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    Param {
        name: String,
        prefix: String,
        suffix: String,
        pattern: String,
        modifier: String,
    },
}

impl RoutePattern {
    /// Compiles `pattern`, reporting the first problem with its position.
    pub fn compile(pattern: &str) -> Result<Self, RouteError> {
        let fail = |index: usize, reason: String| RouteError {
            pattern: pattern.to_string(),
            index,
            reason,
        };
        let tokens = lex(pattern).map_err(|(i, r)| fail(i, r))?;
        let parts = parse(&tokens).map_err(|(i, r)| fail(i, r))?;
        let (source, keys) = to_regex_source(&parts).map_err(|r| fail(0, r))?;
        let literal = match parts.as_slice() {
            [] => Some(String::new()),
            [Part::Text(t)] if t.is_ascii() => Some(t.clone()),
            _ => None,
        };
        let matcher = match literal {
            Some(text) => Matcher::Literal {
                text,
                source,
                regex: std::sync::OnceLock::new(),
            },
            None => Matcher::Regex(
                Regex::new(&source)
                    .map_err(|e| fail(0, format!("invalid regular expression ({e})")))?,
            ),
        };
        Ok(RoutePattern {
            source: pattern.to_string(),
            matcher,
            keys,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Matches a whole path (no query string). Returns the named parameters, percent-decoded;
    /// repeated parameters (`*`, `+`) are arrays. `None` when the path does not match.
    pub fn match_path(&self, path: &str) -> Option<Map<String, Value>> {
        if let Matcher::Literal { text, .. } = &self.matcher {
            // Outside ASCII, Unicode case folding (`K` and the Kelvin sign) is the regex's job.
            if path.is_ascii() {
                let rest = path
                    .get(..text.len())
                    .filter(|head| head.eq_ignore_ascii_case(text));
                let tail = rest.map(|_| &path[text.len()..]);
                return match tail {
                    Some("") => Some(Map::new()),
                    Some(t) if t.len() == 1 && DELIMITER.contains(t) => Some(Map::new()),
                    _ => None,
                };
            }
        }
        let caps = self.matcher.regex()?.captures(path).ok()??;
        let mut params = Map::new();
        for (i, key) in self.keys.iter().enumerate() {
            let Some(m) = caps.get(i + 1) else { continue };
            let value = if key.repeat {
                let sep = format!("{}{}", key.prefix, key.suffix);
                let items = if sep.is_empty() {
                    vec![Value::String(decode_component(m.as_str()))]
                } else {
                    m.as_str()
                        .split(sep.as_str())
                        .map(|s| Value::String(decode_component(s)))
                        .collect()
                };
                Value::Array(items)
            } else {
                Value::String(decode_component(m.as_str()))
            };
            params.insert(key.name.clone(), value);
        }
        Some(params)
    }
}

/// `decodeURIComponent`, keeping the raw text when it is not valid percent-encoded UTF-8
/// (where JavaScript would throw).
fn decode_component(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    match percent_encoding::percent_decode_str(s).decode_utf8() {
        Ok(decoded) if well_formed_escapes(s) => decoded.into_owned(),
        _ => s.to_string(),
    }
}

/// Whether every `%` starts a two-hex-digit escape, as `decodeURIComponent` requires.
fn well_formed_escapes(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if i + 2 >= b.len() {
                return false;
            }
            if !(b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit()) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if ".+*?=^!:${}()[]|/\\".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn lex(s: &str) -> Result<Vec<Token>, (usize, String)> {
    let chars: Vec<char> = s.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    let tok = |kind, index, value: String| Token { kind, index, value };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '*' | '+' | '?' => {
                tokens.push(tok(TokenKind::Modifier, i, c.to_string()));
                i += 1;
            }
            '\\' => {
                let Some(next) = chars.get(i + 1) else {
                    return Err((i, "a `\\` escape with no character after it".into()));
                };
                tokens.push(tok(TokenKind::Escaped, i, next.to_string()));
                i += 2;
            }
            '{' => {
                tokens.push(tok(TokenKind::Open, i, c.to_string()));
                i += 1;
            }
            '}' => {
                tokens.push(tok(TokenKind::Close, i, c.to_string()));
                i += 1;
            }
            ':' => {
                let mut j = i + 1;
                let mut name = String::new();
                while j < chars.len() && (chars[j].is_ascii_alphanumeric() || chars[j] == '_') {
                    name.push(chars[j]);
                    j += 1;
                }
                if name.is_empty() {
                    return Err((i, "missing parameter name after `:`".into()));
                }
                tokens.push(tok(TokenKind::Name, i, name));
                i = j;
            }
            '(' => {
                let mut count = 1;
                let mut pattern = String::new();
                let mut j = i + 1;
                if chars.get(j) == Some(&'?') {
                    return Err((j, "a pattern cannot start with `?`".into()));
                }
                while j < chars.len() {
                    if chars[j] == '\\' {
                        pattern.push(chars[j]);
                        if let Some(n) = chars.get(j + 1) {
                            pattern.push(*n);
                        }
                        j += 2;
                        continue;
                    }
                    if chars[j] == ')' {
                        count -= 1;
                        if count == 0 {
                            j += 1;
                            break;
                        }
                    } else if chars[j] == '(' {
                        count += 1;
                        if chars.get(j + 1) != Some(&'?') {
                            return Err((
                                j,
                                "capturing groups are not allowed inside a pattern; use `(?:...)`"
                                    .into(),
                            ));
                        }
                    }
                    pattern.push(chars[j]);
                    j += 1;
                }
                if count != 0 {
                    return Err((i, "unbalanced `(` in pattern".into()));
                }
                if pattern.is_empty() {
                    return Err((i, "empty pattern `()`".into()));
                }
                tokens.push(tok(TokenKind::Pattern, i, pattern));
                i = j;
            }
            _ => {
                tokens.push(tok(TokenKind::Char, i, c.to_string()));
                i += 1;
            }
        }
    }
    tokens.push(tok(TokenKind::End, i, String::new()));
    Ok(tokens)
}

fn parse(tokens: &[Token]) -> Result<Vec<Part>, (usize, String)> {
    let mut result: Vec<Part> = Vec::new();
    let mut key = 0usize;
    let mut i = 0usize;
    let mut path = String::new();

    let try_consume = |i: &mut usize, kind: TokenKind| -> Option<String> {
        if *i < tokens.len() && tokens[*i].kind == kind {
            *i += 1;
            Some(tokens[*i - 1].value.clone())
        } else {
            None
        }
    };
    let consume_text = |i: &mut usize| -> String {
        let mut out = String::new();
        while let Some(v) =
            try_consume(i, TokenKind::Char).or_else(|| try_consume(i, TokenKind::Escaped))
        {
            out.push_str(&v);
        }
        out
    };
    let safe_pattern = |result: &[Part], prefix: &str| -> Result<String, String> {
        let prev = result.last();
        let prev_text = if !prefix.is_empty() {
            prefix.to_string()
        } else {
            match prev {
                Some(Part::Text(t)) => t.clone(),
                _ => String::new(),
            }
        };
        if let (Some(Part::Param { name, .. }), true) = (prev, prev_text.is_empty()) {
            return Err(format!(
                "two parameters need text between them; nothing follows `{name}`"
            ));
        }
        if prev_text.is_empty() || prev_text.chars().any(|c| DELIMITER.contains(c)) {
            Ok(format!("[^{}]+?", escape(DELIMITER)))
        } else {
            Ok(format!(
                "(?:(?!{})[^{}])+?",
                escape(&prev_text),
                escape(DELIMITER)
            ))
        }
    };

    while i < tokens.len() {
        let here = tokens[i].index;
        let ch = try_consume(&mut i, TokenKind::Char);
        let name = try_consume(&mut i, TokenKind::Name);
        let pattern = try_consume(&mut i, TokenKind::Pattern);
        if name.is_some() || pattern.is_some() {
            let mut prefix = ch.unwrap_or_default();
            if !prefix.is_empty() && !PREFIXES.contains(prefix.as_str()) {
                path.push_str(&prefix);
                prefix.clear();
            }
            if !path.is_empty() {
                result.push(Part::Text(std::mem::take(&mut path)));
            }
            let name = name.unwrap_or_else(|| {
                key += 1;
                (key - 1).to_string()
            });
            let pattern = match pattern {
                Some(p) => p,
                None => safe_pattern(&result, &prefix).map_err(|r| (here, r))?,
            };
            let modifier = try_consume(&mut i, TokenKind::Modifier).unwrap_or_default();
            result.push(Part::Param {
                name,
                prefix,
                suffix: String::new(),
                pattern,
                modifier,
            });
            continue;
        }
        if let Some(v) = ch.or_else(|| try_consume(&mut i, TokenKind::Escaped)) {
            path.push_str(&v);
            continue;
        }
        if !path.is_empty() {
            result.push(Part::Text(std::mem::take(&mut path)));
        }
        if try_consume(&mut i, TokenKind::Open).is_some() {
            let prefix = consume_text(&mut i);
            let name = try_consume(&mut i, TokenKind::Name).unwrap_or_default();
            let pattern = try_consume(&mut i, TokenKind::Pattern).unwrap_or_default();
            let suffix = consume_text(&mut i);
            if try_consume(&mut i, TokenKind::Close).is_none() {
                let t = &tokens[i.min(tokens.len() - 1)];
                return Err((t.index, "expected `}` to close the group".into()));
            }
            let name = if !name.is_empty() {
                name
            } else if !pattern.is_empty() {
                key += 1;
                (key - 1).to_string()
            } else {
                String::new()
            };
            let pattern = if !name.is_empty() && pattern.is_empty() {
                safe_pattern(&result, &prefix).map_err(|r| (here, r))?
            } else {
                pattern
            };
            let modifier = try_consume(&mut i, TokenKind::Modifier).unwrap_or_default();
            result.push(Part::Param {
                name,
                prefix,
                suffix,
                pattern,
                modifier,
            });
            continue;
        }
        if try_consume(&mut i, TokenKind::End).is_none() {
            let t = &tokens[i];
            let what = match t.kind {
                TokenKind::Modifier => {
                    format!("unexpected `{}`; escape it as `\\\\{}`", t.value, t.value)
                }
                TokenKind::Close => "unexpected `}` with no `{` before it".to_string(),
                _ => format!("unexpected `{}`", t.value),
            };
            return Err((t.index, what));
        }
    }
    Ok(result)
}

fn to_regex_source(parts: &[Part]) -> Result<(String, Vec<Key>), String> {
    let mut route = String::from("(?i)^");
    let mut keys = Vec::new();
    for part in parts {
        match part {
            Part::Text(t) => route.push_str(&escape(t)),
            Part::Param {
                name,
                prefix,
                suffix,
                pattern,
                modifier,
            } => {
                let pre = escape(prefix);
                let suf = escape(suffix);
                let repeat = modifier == "+" || modifier == "*";
                if pattern.is_empty() {
                    route.push_str(&format!("(?:{pre}{suf}){modifier}"));
                    continue;
                }
                keys.push(Key {
                    name: name.clone(),
                    prefix: prefix.clone(),
                    suffix: suffix.clone(),
                    repeat,
                });
                if !pre.is_empty() || !suf.is_empty() {
                    if repeat {
                        let m = if modifier == "*" { "?" } else { "" };
                        route.push_str(&format!(
                            "(?:{pre}((?:{pattern})(?:{suf}{pre}(?:{pattern}))*){suf}){m}"
                        ));
                    } else {
                        route.push_str(&format!("(?:{pre}({pattern}){suf}){modifier}"));
                    }
                } else {
                    if repeat {
                        return Err(format!(
                            "cannot repeat `{name}` without a prefix or suffix; write `/:{name}{modifier}`"
                        ));
                    }
                    route.push_str(&format!("({pattern}){modifier}"));
                }
            }
        }
    }
    route.push_str(&format!("[{}]?$", escape(DELIMITER)));
    Ok((route, keys))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(pattern: &str, path: &str) -> Option<Value> {
        RoutePattern::compile(pattern)
            .expect("pattern compiles")
            .match_path(path)
            .map(Value::Object)
    }

    #[test]
    fn named_parameters() {
        assert_eq!(m("/users/:id", "/users/42"), Some(json!({"id": "42"})));
        assert_eq!(m("/users/:id", "/users/42/"), Some(json!({"id": "42"})));
        assert_eq!(m("/users/:id", "/users"), None);
        assert_eq!(m("/users/:id", "/users/42/x"), None);
        assert_eq!(m("/USERS/:id", "/users/a"), Some(json!({"id": "a"})));
    }

    #[test]
    fn optional_and_repeated() {
        assert_eq!(m("/a/:b?", "/a"), Some(json!({})));
        assert_eq!(m("/a/:b?", "/a/x"), Some(json!({"b": "x"})));
        assert_eq!(m("/f/:rest*", "/f"), Some(json!({})));
        assert_eq!(
            m("/f/:rest*", "/f/a/b/c"),
            Some(json!({"rest": ["a", "b", "c"]}))
        );
        assert_eq!(m("/f/:rest+", "/f"), None);
        assert_eq!(m("/f/:rest+", "/f/a"), Some(json!({"rest": ["a"]})));
    }

    #[test]
    fn custom_and_unnamed_groups() {
        assert_eq!(m("/n/:id(\\d+)", "/n/12"), Some(json!({"id": "12"})));
        assert_eq!(m("/n/:id(\\d+)", "/n/ab"), None);
        assert_eq!(m("/n/(\\d+)", "/n/7"), Some(json!({"0": "7"})));
        assert_eq!(m("/n{-:x}?", "/n-3"), Some(json!({"x": "3"})));
        assert_eq!(m("/n{-:x}?", "/n"), Some(json!({})));
    }

    #[test]
    fn text_between_parameters_is_respected() {
        assert_eq!(
            m("/:from-:to", "/a-b"),
            Some(json!({"from": "a", "to": "b"}))
        );
        assert_eq!(
            m("/:a.:ext", "/file.json"),
            Some(json!({"a": "file", "ext": "json"}))
        );
    }

    #[test]
    fn parameters_are_percent_decoded() {
        assert_eq!(m("/u/:name", "/u/caf%C3%A9"), Some(json!({"name": "café"})));
        assert_eq!(m("/u/:name", "/u/100%"), Some(json!({"name": "100%"})));
        assert_eq!(m("/u/:name", "/u/%zz"), Some(json!({"name": "%zz"})));
    }

    #[test]
    fn bad_patterns_name_the_position() {
        let e = RoutePattern::compile("/a/:").unwrap_err();
        assert_eq!(e.index, 3);
        assert!(e.to_string().contains("missing parameter name"), "{e}");
        let e = RoutePattern::compile("/a/(b").unwrap_err();
        assert!(e.to_string().contains("unbalanced"), "{e}");
        let e = RoutePattern::compile("/a/((x))").unwrap_err();
        assert!(e.to_string().contains("capturing groups"), "{e}");
        let e = RoutePattern::compile("/a*").unwrap_err();
        assert!(e.to_string().contains("unexpected `*`"), "{e}");
        let e = RoutePattern::compile("/:a:b").unwrap_err();
        assert!(e.to_string().contains("text between"), "{e}");
        let e = RoutePattern::compile("/x/:id([)").unwrap_err();
        assert!(e.to_string().contains("invalid regular expression"), "{e}");
    }

    proptest::proptest! {
        /// A pattern without parameters, compared as text, decides as its regular expression does.
        #[test]
        fn literal_patterns_match_as_their_regex(
            text in "(/[a-zA-Z0-9._~k-]{0,6}){0,3}",
            other in "(/[a-zA-Z0-9._~K\u{212A}ſ-]{0,6}){0,3}",
            suffix in "[/#?x]?",
            kind in 0..4u8,
        ) {
            let path = match kind {
                0 => format!("{text}{suffix}"),
                1 => format!("{}{suffix}", text.to_ascii_uppercase()),
                2 => format!("{}{suffix}", text.replace('k', "\u{212A}")),
                _ => format!("{other}{suffix}"),
            };
            let fast = RoutePattern::compile(&text).expect("compiles");
            let is_literal = matches!(fast.matcher, Matcher::Literal { .. });
            proptest::prop_assert!(is_literal);
            let regex = Regex::new(&to_regex_source(&parse(&lex(&text).expect("lexes")).expect("parses"))
                .expect("source").0).expect("regex");
            let by_regex = regex.is_match(&path).expect("matches");
            proptest::prop_assert_eq!(fast.match_path(&path).is_some(), by_regex, "{} vs {}", text, path);
            let upper = path.to_ascii_uppercase();
            proptest::prop_assert_eq!(fast.match_path(&upper).is_some(), regex.is_match(&upper).expect("matches"));
        }
    }
}
