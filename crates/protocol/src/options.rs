//! Option values written in YAML that both trigger files and the relay's configuration use:
//! durations (`300`, `"5m"`), times (`HOOKFLOW_NOW`), problems found at a key path, and the line
//! a key path sits on, so every message can say `file:line`.
//!
//! Not the YAML parser itself (serde_yaml) nor any file format: callers own their schemas.

use serde_json::Value;

/// A problem in an option's value: the keys that lead to it (for locating its line), and what
/// is wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionProblem {
    /// Keys below the trigger (`["verify", "preset"]`), for locating the line.
    pub keys: Vec<String>,
    /// What is wrong and what to do.
    pub message: String,
}

/// An [`OptionProblem`] at `keys`.
pub fn problem(keys: &[&str], message: impl Into<String>) -> OptionProblem {
    OptionProblem {
        keys: keys.iter().map(|s| s.to_string()).collect(),
        message: message.into(),
    }
}

/// Seconds from `300`, `"300s"`, `"5m"`, `"1h"`.
pub fn parse_duration(v: &Value) -> Option<i64> {
    parse_duration_ms(v).map(|ms| ms / 1000)
}

/// Milliseconds from a number of seconds or `"250ms"`, `"30s"`, `"5m"`, `"1h"`, `"2d"`.
pub fn parse_duration_ms(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .filter(|n| *n >= 0)
            .and_then(|n| n.checked_mul(1000)),
        Value::String(s) => {
            let s = s.trim();
            let (digits, unit) =
                s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
            let n: i64 = digits.parse().ok()?;
            let factor = match unit.trim() {
                "ms" => 1,
                "" | "s" => 1000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => return None,
            };
            n.checked_mul(factor)
        }
        _ => None,
    }
}

/// Unix seconds or RFC 3339.
pub fn parse_time(text: &str) -> Option<i64> {
    text.trim().parse::<i64>().ok().or_else(|| {
        chrono::DateTime::parse_from_rfc3339(text.trim())
            .ok()
            .map(|t| t.timestamp())
    })
}

/// Best-effort line (1-based) of a nested key in block-style YAML: each key is looked for below
/// the previous one, at a deeper indent. Returns the line of the deepest key found.
pub fn locate(text: &str, keys: &[&str]) -> Option<usize> {
    let mut found = None;
    let mut parent_indent: Option<usize> = None;
    let mut start = 0usize;
    let lines: Vec<&str> = text.lines().collect();
    'keys: for key in keys {
        for (i, line) in lines.iter().enumerate().skip(start) {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let indent = line.len() - trimmed.len();
            if let Some(p) = parent_indent {
                if indent <= p && i > start {
                    break;
                }
            }
            let body = trimmed.strip_prefix("- ").unwrap_or(trimmed);
            let candidates = [
                format!("{key}:"),
                format!("\"{key}\":"),
                format!("'{key}':"),
            ];
            if candidates.iter().any(|c| body.starts_with(c.as_str())) {
                found = Some(i + 1);
                parent_indent = Some(indent);
                start = i + 1;
                continue 'keys;
            }
        }
        break;
    }
    found
}

/// Best-effort line (1-based) of the first line that holds the key `key:` anywhere (inline
/// mappings and list items included), for keys whose parents [`locate`] cannot follow.
pub fn locate_anywhere(text: &str, key: &str) -> Option<usize> {
    let written = format!("{key}:");
    let spaced = format!(" {key}:");
    text.lines()
        .position(|l| {
            let t = l
                .trim_start()
                .trim_start_matches("- ")
                .trim_start_matches('{');
            t.starts_with(&written) || l.contains(&spaced)
        })
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_and_times() {
        assert_eq!(parse_duration(&json!("1h")), Some(3600));
        assert_eq!(parse_duration(&json!(300)), Some(300));
        assert_eq!(parse_duration_ms(&json!("250ms")), Some(250));
        assert_eq!(parse_duration_ms(&json!("2d")), Some(172_800_000));
        assert_eq!(parse_duration(&json!("soon")), None);
        assert_eq!(parse_duration(&json!(-1)), None);
        assert_eq!(parse_time("2026-01-01T00:00:00Z"), Some(1_767_225_600));
        assert_eq!(parse_time(" 1764000000 "), Some(1_764_000_000));
        assert_eq!(parse_time("yesterday"), None);
    }

    #[test]
    fn key_lines() {
        let text =
            "on:\n  webhook:\n    verify:\n      preset: x\nother:\n  - {slug: a, bogus: 1}\n";
        assert_eq!(
            locate(text, &["on", "webhook", "verify", "preset"]),
            Some(4)
        );
        assert_eq!(locate(text, &["on", "nope"]), Some(1));
        assert_eq!(locate_anywhere(text, "bogus"), Some(6));
        assert_eq!(locate_anywhere(text, "slug"), Some(6));
        assert_eq!(locate_anywhere(text, "absent"), None);
    }
}
