//! What `hookflow run` hands to the next steps (DESIGN §4): the outputs map, written to
//! `$GITHUB_OUTPUT` as `name<<DELIMITER` blocks, a table for `$GITHUB_STEP_SUMMARY`, and the
//! single JSON object of `--json` / `replay`.
//!
//! Deciding *what* matched is [`crate::matching`]'s job; this module only renders a result.

use std::borrow::Cow;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use crate::result::{BodyForm, RunResult, BUILTIN_OUTPUTS};

/// A body longer than this (bytes of its output text) goes to a file named by `body_file`.
pub const MAX_BODY_OUTPUT: usize = 1024 * 1024;

/// The outputs of a run, in the order they are written, borrowing the large values (the body)
/// from the result instead of copying them. Values are JSON; [`output_text`] gives the text an
/// output holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Outputs<'a>(Vec<(String, Cow<'a, Value>)>);

impl<'a> Outputs<'a> {
    /// The value of an output.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_ref())
    }

    /// Names and values, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_ref()))
    }

    /// An owned JSON object (what `--json` prints).
    pub fn into_map(self) -> Map<String, Value> {
        self.0
            .into_iter()
            .map(|(n, v)| (n, v.into_owned()))
            .collect()
    }

    fn put(&mut self, name: &str, value: Cow<'a, Value>) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.to_string(), value)),
        }
    }
}

/// The outputs of a run (see [`Outputs`]).
pub fn outputs(result: &RunResult) -> Outputs<'_> {
    let first = result.matches.first();
    let mut out = Outputs(Vec::new());
    let owned = |v: Value| Cow::Owned(v);
    out.put("matched", owned(Value::Bool(result.matched())));
    out.put(
        "workflow",
        owned(Value::String(
            first.map(|m| m.workflow.clone()).unwrap_or_default(),
        )),
    );
    out.put(
        "trigger",
        owned(Value::String(
            first.map(|m| m.trigger.clone()).unwrap_or_default(),
        )),
    );
    out.put(
        "event_type",
        owned(Value::String(result.event_type.clone().unwrap_or_default())),
    );
    if let Some(m) = first {
        for (k, v) in &m.item {
            out.put(k, Cow::Borrowed(v));
        }
        // The trigger's own outputs again as one object, for `fromJSON()` where outputs must be
        // declared in advance (a composite action's).
        let own: Map<String, Value> = m
            .item
            .iter()
            .filter(|(k, _)| !BUILTIN_OUTPUTS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        out.put("trigger_outputs", owned(Value::Object(own)));
    }
    out.put("matches", owned(matches_json(result)));
    out
}

fn matches_json(result: &RunResult) -> Value {
    Value::Array(
        result
            .matches
            .iter()
            .map(|m| json!({"workflow": m.workflow, "trigger": m.trigger}))
            .collect(),
    )
}

/// The one JSON object `--json` and `replay` print.
pub fn result_json(result: &RunResult) -> Value {
    let first = result.matches.first();
    let mut outputs = outputs(result).into_map();
    if first.is_some_and(|m| m.body_form == BodyForm::JsonText) {
        // The body as JSON, as for any body (the output itself is its text).
        if let Some(body) = outputs.get_mut("body") {
            if let Some(parsed) = body.as_str().and_then(|t| serde_json::from_str(t).ok()) {
                *body = parsed;
            }
        }
    }
    json!({
        "matched": result.matched(),
        "workflow": first.map(|m| m.workflow.clone()),
        "trigger": first.map(|m| m.trigger.clone()),
        "event_type": result.event_type,
        "outputs": outputs,
        "matches": matches_json(result),
        "reason": result.reason,
        "refusal": result.refusal,
    })
}

/// The text an output holds: strings as they are, everything else as compact JSON.
pub fn output_text(value: &Value) -> Cow<'_, str> {
    match value {
        Value::String(s) => Cow::Borrowed(s),
        other => Cow::Owned(other.to_string()),
    }
}

/// Appends the outputs to a `$GITHUB_OUTPUT` file. A body over [`MAX_BODY_OUTPUT`] is written to
/// a file under `spill_dir` instead, and its path given as `body_file`.
pub fn write_github_output(
    file: &Path,
    outputs: &Outputs<'_>,
    spill_dir: &Path,
) -> std::io::Result<()> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)?;
    // Written as it goes: a large value is not copied into one buffer first.
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, f);
    let mut delimiters = Delimiters::new();
    for (name, value) in outputs.iter() {
        let mut value_text = output_text(value);
        if name == "body" && value_text.len() > MAX_BODY_OUTPUT {
            let path = spill_body(spill_dir, &value_text)?;
            write_block(
                &mut out,
                &mut delimiters,
                "body_file",
                &path.display().to_string(),
            )?;
            value_text = Cow::Borrowed("");
        }
        write_block(&mut out, &mut delimiters, name, &value_text)?;
    }
    out.flush()
}

fn spill_body(dir: &Path, body: &str) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!(
        "hookflow-body-{}.txt",
        Delimiters::new().next_hex(8)
    ));
    std::fs::write(&path, body)?;
    Ok(path)
}

/// One `name<<DELIM` block, with a random delimiter that does not occur in the value.
fn write_block<W: Write>(
    out: &mut W,
    delimiters: &mut Delimiters,
    name: &str,
    value: &str,
) -> std::io::Result<()> {
    let delimiter = loop {
        let d = format!("ghadelimiter_{}", delimiters.next_hex(16));
        if !value.contains(&d) {
            break d;
        }
    };
    writeln!(out, "{name}<<{delimiter}")?;
    out.write_all(value.as_bytes())?;
    write!(out, "\n{delimiter}\n")
}

/// Unpredictable delimiters: one seed from the OS, then SHA-256 of the seed and a counter, so a
/// run asks the OS for randomness once rather than once per output.
struct Delimiters {
    seed: [u8; 32],
    counter: u64,
}

impl Delimiters {
    fn new() -> Self {
        let mut seed = [0u8; 32];
        if getrandom::fill(&mut seed).is_err() {
            // No OS randomness: fall back to time and process id; uniqueness is still checked.
            use sha2::Digest as _;
            let fallback = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
            seed.copy_from_slice(&sha2::Sha256::digest(fallback.as_bytes()));
        }
        Delimiters { seed, counter: 0 }
    }

    /// `bytes` (at most 32) fresh bytes as hex.
    fn next_hex(&mut self, bytes: usize) -> String {
        use sha2::Digest as _;
        self.counter += 1;
        let digest = sha2::Sha256::new()
            .chain_update(self.seed)
            .chain_update(self.counter.to_le_bytes())
            .finalize();
        hex::encode(&digest[..bytes.min(32)])
    }
}

pub use hookflow_protocol::credentials::is_credential_header;

/// The values to hide from logs: outputs marked `mask: true` and the values of credential
/// headers ([`hookflow_protocol::credentials`]), each at least
/// [`MIN_MASKED_CHARS`](hookflow_protocol::credentials::MIN_MASKED_CHARS) long.
pub fn secrets(result: &RunResult) -> Vec<String> {
    let mut out = Vec::new();
    for m in &result.matches {
        out.extend(m.masked.iter().cloned());
        if let Some(Value::Object(headers)) = m.item.get("headers") {
            for (name, value) in headers {
                if is_credential_header(name) {
                    match value {
                        Value::String(s) => out.push(s.clone()),
                        Value::Array(items) => {
                            out.extend(items.iter().filter_map(Value::as_str).map(str::to_string))
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    out.retain(|s| hookflow_protocol::credentials::worth_masking(s));
    out.sort();
    out.dedup();
    out
}

/// `value` with every occurrence of a secret replaced by `***` (what `--json` prints unless told
/// to show secrets).
pub fn redact(value: &mut Value, secrets: &[String]) {
    match value {
        Value::String(s) => {
            for secret in secrets {
                if s.contains(secret.as_str()) {
                    *s = s.replace(secret.as_str(), "***");
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|v| redact(v, secrets)),
        Value::Object(map) => map.values_mut().for_each(|v| redact(v, secrets)),
        _ => {}
    }
}

/// Text made safe for one line of a runner's log: `%`, CR and LF escaped as GitHub's workflow
/// commands escape them, so request text can never start a line of its own (a line starting
/// `::` is a command to the runner).
pub fn log_safe(text: &str) -> String {
    text.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// `::add-mask::` commands for every secret line (a multi-line value is masked line by line).
pub fn mask_commands(secrets: &[String]) -> String {
    let mut out = String::new();
    for secret in secrets {
        for line in secret
            .lines()
            .filter(|l| hookflow_protocol::credentials::worth_masking(l))
        {
            out.push_str("::add-mask::");
            out.push_str(&log_safe(line));
            out.push('\n');
        }
    }
    out
}

/// The Markdown appended to `$GITHUB_STEP_SUMMARY`; `outs` is [`outputs`] of the same result.
pub fn step_summary(result: &RunResult, outs: &Outputs<'_>) -> String {
    let mut s = String::from("### hookflow\n\n");
    match result.matches.first() {
        Some(m) => s.push_str(&format!(
            "Matched `{}` trigger `{}`.\n\n",
            m.workflow, m.trigger
        )),
        // The whole reason: it says which clause failed and what was found.
        None => s.push_str(&format!(
            "No trigger matched: {}\n\n",
            escape_markdown(
                result.reason.as_deref().unwrap_or("no reason given"),
                usize::MAX
            )
        )),
    }
    s.push_str("| output | value |\n|---|---|\n");
    let hidden = secrets(result);
    let shown = |v: &Value| {
        let text = output_text(v);
        if hidden.iter().any(|h| text.contains(h.as_str())) {
            "***".to_string()
        } else {
            cell(&text)
        }
    };
    let summary_rows = [
        "matched",
        "workflow",
        "trigger",
        "event_type",
        "method",
        "path",
        "request_id",
        "verified",
    ];
    for name in summary_rows {
        if let Some(v) = outs.get(name) {
            s.push_str(&format!("| `{name}` | {} |\n", shown(v)));
        }
    }
    // The trigger's own `outputs:`.
    for (name, v) in outs.iter() {
        if !BUILTIN_OUTPUTS.contains(&name) {
            s.push_str(&format!("| `{name}` | {} |\n", shown(v)));
        }
    }
    if result.matches.len() > 1 {
        s.push_str(&format!("| `matches` | {} |\n", result.matches.len()));
    }
    s.push('\n');
    s
}

/// A value made safe for one Markdown table cell, shortened to keep the table readable: line
/// breaks become spaces, and every character Markdown or HTML gives a meaning (`<`, `[`, `*`,
/// `|`, …) becomes a character reference, so request text renders as text: no links, images,
/// tags or table breaks.
fn cell(text: &str) -> String {
    escape_markdown(text, 120)
}

/// `text` with line breaks as spaces and Markdown/HTML characters as character references, cut
/// to `max` characters.
fn escape_markdown(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        match c {
            '\n' | '\r' => out.push(' '),
            '<' | '>' | '&' | '|' | '[' | ']' | '(' | ')' | '!' | '*' | '_' | '`' | '~' | '\\'
            | '#' | '"' | '\'' => out.push_str(&format!("&#{};", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_use_fresh_delimiters() {
        let mut out = Vec::new();
        let mut delimiters = Delimiters::new();
        write_block(&mut out, &mut delimiters, "body", "line1\nline2").expect("write");
        write_block(&mut out, &mut delimiters, "path", "/x").expect("write");
        let out = String::from_utf8(out).expect("utf8");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 7);
        let delim = lines[0].strip_prefix("body<<").expect("header");
        assert!(delim.starts_with("ghadelimiter_") && delim.len() == 13 + 32);
        assert_eq!(lines[1..3], ["line1", "line2"]);
        assert_eq!(lines[3], delim);
        let second = lines[4].strip_prefix("path<<").expect("header");
        assert_ne!(delim, second, "each block has its own delimiter");
        let other_run = Delimiters::new().next_hex(16);
        assert_ne!(&delim[13..], other_run, "each run has its own seed");
    }

    #[test]
    fn credential_headers() {
        for name in [
            "Authorization",
            "cookie",
            "x-gitlab-token",
            "x-webhook-secret",
            "x-api-key",
            "X-Github-Authorization",
        ] {
            assert!(is_credential_header(name), "{name}");
        }
        // A sender cannot choose what the runner masks by naming a header.
        for name in [
            "content-type",
            "x-github-event",
            "user-agent",
            "x-a-token",
            "x-hub-signature-256",
        ] {
            assert!(!is_credential_header(name), "{name}");
        }
        assert_eq!(
            mask_commands(&["a%bcdefgh\nshort\nijklmnop".into()]),
            "::add-mask::a%25bcdefgh\n::add-mask::ijklmnop\n",
            "lines too short to be secrets are not masked"
        );
    }

    #[test]
    fn cells_are_escaped() {
        assert_eq!(cell("a|b\nc"), "a&#124;b c");
        assert_eq!(cell(&"x".repeat(200)).chars().count(), 121);
        assert_eq!(
            cell("<img src=x onerror=alert(1)> [link](https://evil.example) **b**"),
            "&#60;img src=x onerror=alert&#40;1&#41;&#62; &#91;link&#93;&#40;https://evil.example&#41; &#42;&#42;b&#42;&#42;"
        );
    }
}
