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

/// The bodies the `events` output holds, in bytes of their text together: past it, an event's
/// `body` is left out (`body_omitted`) and, in `$GITHUB_OUTPUT`, written to its `body_file`. It
/// keeps `events` well under GitHub's 1 MB limit on a job output, so `fromJSON` on another job
/// still sees it.
pub const EVENTS_BODY_BUDGET: usize = 512 * 1024;

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
        out.put("trigger_outputs", owned(Value::Object(m.own_outputs())));
    }
    out.put("matches", owned(matches_json(result)));
    out.put("batch_size", owned(Value::from(result.events().len())));
    out.put(
        "batch_id",
        owned(Value::String(
            result
                .batch
                .as_ref()
                .and_then(|b| b.id.clone())
                .unwrap_or_default(),
        )),
    );
    out.put("events", owned(events_json(result)));
    out
}

/// The `events` output: one object per request the event carried (a batch's events, or the
/// one request), for `strategy.matrix` with `fromJSON`. Each names its event and, when matched,
/// what its first (most specific) trigger hands on. Values masked in the step ([`secrets`]: a
/// trigger's `mask: true` outputs, credential headers) show as `***`, and credential headers
/// are left out, because GitHub drops a job output that holds a masked value; an event whose
/// body held one is marked `body_redacted`.
pub fn events_json(result: &RunResult) -> Value {
    let mut budget = EVENTS_BODY_BUDGET;
    let secrets = secrets(result);
    Value::Array(
        result
            .events()
            .iter()
            .enumerate()
            .map(|(index, r)| event_json(index, r, &mut budget, &secrets))
            .collect(),
    )
}

/// The fields of an `events` element after its name and match, in order; the first seven are
/// the matched trigger's built-in outputs of the same names.
const EVENT_FIELDS: [&str; 12] = [
    "request_id",
    "delivery_id",
    "verified",
    "method",
    "path",
    "params",
    "query",
    "headers",
    "outputs",
    "body",
    "body_encoding",
    "body_file",
];

fn event_json(index: usize, r: &RunResult, budget: &mut usize, secrets: &[String]) -> Value {
    let mut e = Map::new();
    e.insert("index".into(), Value::from(index));
    e.insert("id".into(), json!(r.relay_event_id));
    e.insert("event_type".into(), json!(r.event_type));
    e.insert("matched".into(), Value::Bool(r.matched()));
    let first = r.matches.first();
    e.insert("workflow".into(), json!(first.map(|m| &m.workflow)));
    e.insert("trigger".into(), json!(first.map(|m| &m.trigger)));
    // Every element has every field (null when not matched), so a matrix or `jq` reads each
    // the same way.
    for name in EVENT_FIELDS {
        e.insert(name.into(), Value::Null);
    }
    e.insert("body_omitted".into(), Value::Bool(false));
    e.insert("body_redacted".into(), Value::Bool(false));
    if let Some(m) = first {
        let field = |name: &str| m.item.get(name).cloned().unwrap_or(Value::Null);
        for name in &EVENT_FIELDS[..7] {
            e.insert((*name).into(), field(name));
        }
        let headers: Map<String, Value> = match m.item.get("headers") {
            Some(Value::Object(h)) => h
                .iter()
                .filter(|(name, _)| !is_credential_header(name))
                .map(|(n, v)| (n.clone(), v.clone()))
                .collect(),
            _ => Map::new(),
        };
        e.insert("headers".into(), Value::Object(headers));
        e.insert("outputs".into(), Value::Object(m.own_outputs()));
        e.insert("body_encoding".into(), field("body_encoding"));
        let body = m.item.get("body").unwrap_or(&Value::Null);
        if let Some(size) = text_len_within(body, *budget) {
            *budget -= size;
            let mut body = body.clone();
            let redacted = redact(&mut body, secrets);
            e.insert("body".into(), body);
            e.insert("body_redacted".into(), Value::Bool(redacted));
        } else {
            e.insert("body_omitted".into(), Value::Bool(true));
        }
    }
    e.insert("reason".into(), json!(r.reason));
    e.insert("refusal".into(), json!(r.refusal));
    let mut e = Value::Object(e);
    redact(&mut e, secrets);
    e
}

/// The length of [`output_text`] of `value` when it is at most `limit`, found without writing
/// more than `limit` bytes of it anywhere.
fn text_len_within(value: &Value, limit: usize) -> Option<usize> {
    struct Count {
        n: usize,
        limit: usize,
    }
    impl Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.n += buf.len();
            if self.n > self.limit {
                return Err(std::io::ErrorKind::FileTooLarge.into());
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    if let Value::String(s) = value {
        return (s.len() <= limit).then_some(s.len());
    }
    let mut count = Count { n: 0, limit };
    serde_json::to_writer(&mut count, value).ok()?;
    Some(count.n)
}

/// Writes the body of each matched event whose body the `events` output leaves out or redacts
/// to a file under `dir`, and names it as that event's `body_file`.
pub fn write_event_bodies(
    outputs: &mut Outputs<'_>,
    result: &RunResult,
    dir: &Path,
) -> std::io::Result<()> {
    let Some(Value::Array(events)) = outputs
        .0
        .iter_mut()
        .find(|(n, _)| n == "events")
        .map(|(_, v)| v.to_mut())
    else {
        return Ok(());
    };
    for (e, r) in events.iter_mut().zip(result.events()) {
        let flag = |name: &str| e.get(name) == Some(&Value::Bool(true));
        let omitted = flag("body_omitted") || flag("body_redacted");
        let body = r.matches.first().and_then(|m| m.item.get("body"));
        if let (true, Some(body), Some(fields)) = (omitted, body, e.as_object_mut()) {
            let path = spill_body(dir, body)?;
            fields.insert(
                "body_file".into(),
                Value::String(path.display().to_string()),
            );
        }
    }
    Ok(())
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
            let path = spill_body(spill_dir, value)?;
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

/// Writes [`output_text`] of a body to a new file under `dir`, without building the text first.
fn spill_body(dir: &Path, body: &Value) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!(
        "hookflow-body-{}.txt",
        Delimiters::new().next_hex(8)
    ));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
    match body {
        Value::String(text) => out.write_all(text.as_bytes())?,
        other => serde_json::to_writer(&mut out, other)?,
    }
    out.flush()?;
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
    let batch = result.batch.iter().flat_map(|b| &b.events);
    for m in result.matches.iter().chain(batch.flat_map(|r| &r.matches)) {
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
/// to show secrets); whether anything was replaced.
pub fn redact(value: &mut Value, secrets: &[String]) -> bool {
    if secrets.is_empty() {
        return false;
    }
    match value {
        Value::String(s) => {
            let mut changed = false;
            for secret in secrets {
                if s.contains(secret.as_str()) {
                    *s = s.replace(secret.as_str(), "***");
                    changed = true;
                }
            }
            changed
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |changed, v| redact(v, secrets) | changed),
        Value::Object(map) => map
            .values_mut()
            .fold(false, |changed, v| redact(v, secrets) | changed),
        _ => false,
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
    if let Some(batch) = &result.batch {
        s.push_str(&batch_summary(batch, &hidden));
    }
    s
}

/// How many events of a batch the summary lists one by one.
const SUMMARY_EVENTS: usize = 100;

/// The batch's table: one row per event, what it matched or why not.
fn batch_summary(batch: &crate::result::BatchResult, hidden: &[String]) -> String {
    let (matched, refused) = batch.counts();
    let mut s = format!(
        "Batch of {} events: {matched} matched, {refused} refused.\n\n| # | event | matched | verified | trigger or reason |\n|---|---|---|---|---|\n",
        batch.events.len()
    );
    let hide = |text: &str| {
        if hidden.iter().any(|h| text.contains(h.as_str())) {
            "***".to_string()
        } else {
            cell(text)
        }
    };
    for (i, r) in batch.events.iter().enumerate().take(SUMMARY_EVENTS) {
        let id = hide(r.relay_event_id.as_deref().unwrap_or(""));
        let (verified, what) = match r.matches.first() {
            Some(m) => (
                m.item
                    .get("verified")
                    .map(|v| v.to_string())
                    .unwrap_or_default(),
                hide(&format!("{} trigger {}", m.workflow, m.trigger)),
            ),
            None => (
                String::new(),
                hide(r.refusal.as_deref().or(r.reason.as_deref()).unwrap_or("")),
            ),
        };
        s.push_str(&format!(
            "| {i} | {id} | {} | {verified} | {what} |\n",
            r.matched()
        ));
    }
    if batch.events.len() > SUMMARY_EVENTS {
        s.push_str(&format!(
            "\n{} more events are in the `events` output.\n",
            batch.events.len() - SUMMARY_EVENTS
        ));
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
